"""Serve TRK Assistant: `python app.py` (127.0.0.1:7860 unless TRK_HOST / TRK_PORT say otherwise)."""

from chatbot.ui import main

if __name__ == "__main__":
    main()
