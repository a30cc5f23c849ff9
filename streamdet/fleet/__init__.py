"""Fleet mode: several streamdet workers share one camera list over NATS JetStream."""
