"""safealign: align a causal LM to be helpful and harmless with Safe-MM-DPO."""

__version__ = "0.1.0"
