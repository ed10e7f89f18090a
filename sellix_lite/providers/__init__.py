"""Payment providers. BlockPN is the one provider; see `blockpn.py` for its interface."""
