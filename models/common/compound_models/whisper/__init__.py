"""Whisper transcription for the `models/whisper` Truss.

audio.py (decode any format → 16 kHz mono), fetch.py (SSRF-safe URL download),
request.py (JSON / multipart → TranscriptionRequest), chunking.py (VAD cuts ≤ 30 s),
backends.py (faster-whisper, openai-whisper), pipeline.py (parallel chunks → stitch),
transcript.py (types, Stitcher), formats.py (json/text/srt/vtt/verbose_json),
service.py (the Truss's predict), settings.py (model_metadata).
"""
