"""Head Forcing: profiling and roles, episodic memory, head-wise RoPE re-encoding, the policy."""

from methods.head_forcing.policy import HeadForcing, HeadForcingConfig  # noqa: F401  (registers)

__all__ = ["HeadForcing", "HeadForcingConfig"]
