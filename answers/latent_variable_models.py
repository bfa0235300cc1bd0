"""TEMPORARY until notebook 02 is exported."""


def negative_elbo(reconstruction, kl):
    return (kl - reconstruction).mean()
