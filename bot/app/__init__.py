"""The application: wiring, services, runner, web server and the doctor."""
