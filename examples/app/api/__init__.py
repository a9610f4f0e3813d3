"""HTTP layer: dependencies, routers, error handlers."""
