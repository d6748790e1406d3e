"""mpcid.p2p: authenticated channels and discovery."""
