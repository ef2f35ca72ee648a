"""What a model's predictions are worth: metrics, intervals, the operating point, calibration, plots, the gallery."""
