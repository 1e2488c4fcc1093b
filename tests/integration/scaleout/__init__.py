"""Two gunicorn and two uvicorn servers sharing one progress queue or topic: the app, its
gunicorn hooks, the server launcher, and the test."""
