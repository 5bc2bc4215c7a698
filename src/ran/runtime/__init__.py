"""The always-alive runtime: sessions that tick, speak or stay silent, persist, and bound their context."""

from ran.runtime.context import POLICIES, ContextPolicy
from ran.runtime.gate import GATE_FILE, EntropyGate, GateDecision, StateGate, load_gate
from ran.runtime.persistence import SessionSnapshot, SessionStore, sessions_root
from ran.runtime.session import PassRecord, Session, SessionConfig, model_identity

__all__ = [
    "GATE_FILE",
    "POLICIES",
    "ContextPolicy",
    "EntropyGate",
    "GateDecision",
    "PassRecord",
    "Session",
    "SessionConfig",
    "SessionSnapshot",
    "SessionStore",
    "StateGate",
    "load_gate",
    "model_identity",
    "sessions_root",
]
