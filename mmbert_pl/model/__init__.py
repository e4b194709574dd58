"""The mmBERT encoder: ModernBERT architecture over packed documents."""
from .config import CONFIGS, EncoderConfig, named_config
from .encoder import MLMOutput, MMBertForMaskedLM

__all__ = ["CONFIGS", "EncoderConfig", "MLMOutput", "MMBertForMaskedLM", "named_config"]
