"""Experiments for issue 15 (better VAE and GAN recipes on the 4,000 embedded digits); see REPORT.md."""
