"""The domain rules, through the service layer called directly: candidates, models,
versions, descriptions."""
