"""Device drivers: protocol clients for OTN terminals, ROADMs, gateways and GPU nodes. No pytest."""
