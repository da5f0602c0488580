"""Model operations in the running service: which registered version answers each study, shadow runs, rollback."""
