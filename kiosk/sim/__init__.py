"""Fleet simulation: many kiosks and members over a simulated network, running the real ledger,
rules, pipeline, agent message handling and reconciler, to check the money invariants and compare
offline policies (`kiosk sim fleet`)."""
