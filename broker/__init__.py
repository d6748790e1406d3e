"""mpcid.broker: sessions (invitations, admission, MPyC over channels); the `mpcid` command
line is its subpackage `mpcid.broker.cli`."""
