"""Encoder shapes. `tiny` is for tests; `small` and `base` are mmBERT's (recipe §1.1)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 256000
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_layers: int = 22
    num_heads: int = 12
    global_every: int = 3              # layer i is global iff i % global_every == 0
    local_window: int = 128            # total window: a local query sees keys with |i-j| <= local_window // 2
    global_rope_theta: float = 10000.0
    local_rope_theta: float = 10000.0
    max_position: int = 8192
    norm_eps: float = 1e-5
    attn_out_dropout: float = 0.1
    init_std: float = 0.02
    init_cutoff: float = 2.0           # truncated normal at +-cutoff * std
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.local_window < 2 or self.local_window % 2:
            raise ValueError(f"local_window {self.local_window} must be an even number >= 2 (it is the total window)")
        for name in ("vocab_size", "num_layers", "intermediate_size", "global_every", "max_position"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def is_global(self, layer: int) -> bool:
        return layer % self.global_every == 0

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "EncoderConfig":
        return replace(self, **changes)


BASE = EncoderConfig()
SMALL = EncoderConfig(hidden_size=384, num_heads=6)
TINY = EncoderConfig(
    vocab_size=4096, hidden_size=64, intermediate_size=96, num_layers=4, num_heads=4,
    local_window=32, max_position=8192,
)
CONFIGS: dict[str, EncoderConfig] = {"tiny": TINY, "small": SMALL, "base": BASE}


def named_config(name: str, **overrides) -> EncoderConfig:
    """A named shape with field overrides (e.g. a tokenizer's vocab size, a stage's RoPE theta)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name].with_(**overrides)
