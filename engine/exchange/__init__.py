"""Exchange access: ccxt construction helpers now; adapters, error mapping and retries build on them."""
