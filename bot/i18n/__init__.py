"""Languages: gettext catalogs and every text a user reads."""
