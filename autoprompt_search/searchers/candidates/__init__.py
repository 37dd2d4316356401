"""Where discrete candidates come from besides the user: local mutations of good templates and
instructions the model writes itself (APE)."""
