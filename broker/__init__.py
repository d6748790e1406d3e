"""mpcid.broker: sessions and the `mpcid` command line."""
