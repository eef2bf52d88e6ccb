"""Text to speech with Piper voices, streamed sentence by sentence (the `tts` Truss).

sentences: split text into units; normalize: clean and verbalize text; voices: voice
sources and loading; synth: units -> PCM; encode: PCM -> wav/pcm/mp3/opus/aac/flac;
request: body validation; service: the node tying them together.
"""
