"""mpcid.identity: DIDs, the keystore, verifiable credentials and presentations."""
