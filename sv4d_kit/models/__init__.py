"""Networks of SV4D 2.0: the UNet, the conditioner, the autoencoder, and checkpoint loading."""
