"""Coreset Studio's Streamlit app (``streamlit run app/main.py``), thin over :mod:`core`."""
