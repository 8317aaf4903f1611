"""Registry transfers: the trio HTTP client, auth, pull and push."""
