"""Training: data for teaching the model, starting with procedurally generated synthetic worlds (``worlds``)."""
