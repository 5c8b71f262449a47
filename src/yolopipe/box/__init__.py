"""Setting up a rented GPU machine: where to stage the data (stagedir) and the SageMaker job entry (sagemaker).
The training code stays the same everywhere; only these set-up steps differ per platform."""
