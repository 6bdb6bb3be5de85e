"""What a user runs on a finished run: ask, the server and web page, the report, the demo, doctor."""
