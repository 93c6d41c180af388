"""mamba-jax: MAMBA (model-based meta-RL, Rimon et al. ICLR 2024) in JAX/Flax."""
from setuptools import setup

# Versions verified on Python 3.11 / x86_64 CPU (2026-11-25).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "chex==0.1.92",
    "orbax-checkpoint==0.12.8",
    "wandb==0.31.0",
    "absl-py==2.5.1",
    "ml_collections==1.1.0",
    "numpy>=1.26",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "pillow>=10",
]
EXTRAS = {
    "mjx": ["mujoco==4.0.0", "mujoco-mjx==3.17.0"],
    "dev": ["pytest>=8", "pytest-xdist==3.8.0", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29", "pyyaml>=6"],
}

setup(
    name="mamba_jax",
    version="0.1.0",
    description="MAMBA world-model meta-RL in JAX/Flax",
    packages=["mamba_jax", "envs", "experiments", "experiments.configs"],
    package_data={"envs": ["assets/*.xml", "assets/*.txt"], "experiments": ["*.json"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
