"""The stages: measure, diagnose, build the report dict."""
