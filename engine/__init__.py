"""The transaction engine: claiming, settling, webhook dispatch, and the database behind them."""
