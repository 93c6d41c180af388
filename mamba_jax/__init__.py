"""mamba_jax: the MAMBA learning core (world model, actor-critic, agent) in JAX/Flax."""
