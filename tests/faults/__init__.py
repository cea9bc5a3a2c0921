"""Fault injection and soak tests against the real kube-apiserver (hardening issue §2, §3)."""
