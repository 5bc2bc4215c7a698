"""The always-alive runtime: sessions that tick, speak or stay silent, persist, and bound their context."""

from ran.artifact import GATE_FILE
from ran.runtime.context import POLICIES, ContextPolicy
from ran.runtime.gate import EntropyGate, GateDecision, StateGate, load_gate
from ran.runtime.persistence import SessionSnapshot, SessionStore, load_state, save_state, sessions_root
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
    "load_state",
    "model_identity",
    "save_state",
    "sessions_root",
]
