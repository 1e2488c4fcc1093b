"""The demo pipeline: sample files, templates that do real work with the standard library,
and the ``transflow demo`` / ``transflow dev`` commands."""
