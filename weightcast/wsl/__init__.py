"""Weight-space learning: the weight tokeniser and the weight autoencoder behind the "latent" forecaster."""
from .autoencoder import WeightAutoencoder, load_autoencoder, save_autoencoder, train_autoencoder
from .tokenizer import KINDS, POSITION_FEATURES, Tokenizer

__all__ = ["KINDS", "POSITION_FEATURES", "Tokenizer", "WeightAutoencoder", "load_autoencoder", "save_autoencoder",
           "train_autoencoder"]
