"""Patient records: the API, the rules and the SQL behind them."""
