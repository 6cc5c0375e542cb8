"""The ESP telemetry example's parts; app.py puts them together and runs them."""
