"""MPyC programs written for mpcid: run as scripts by MPyC parties, never imported."""
