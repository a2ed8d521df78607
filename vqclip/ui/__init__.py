"""The web page (`vqclip ui`, needs vqclip[ui]): a FastAPI server over the run queue and one static page."""
