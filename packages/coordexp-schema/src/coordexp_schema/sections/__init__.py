"""The typed section contracts of a CoordExp config, one module per concern."""
