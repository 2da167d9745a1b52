"""Serve TRK Assistant: `python app.py` (127.0.0.1:7860 unless TRK_HOST / TRK_PORT say otherwise;
TRK_WORKERS=N adds N API worker processes on TRK_API_PORT, port + 1 unless set)."""

from chatbot.server import main

if __name__ == "__main__":
    main()
