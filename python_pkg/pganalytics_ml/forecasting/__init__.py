"""Forecasting: history into features, models trained and stored, forecasts kept ready for pgml_predict."""
