"""Configuration: environment settings, the rules file, and the portal they describe."""
