"""doorface benchmarks: side by side with face_recognition (dlib), measured in one run. Not part of the tests
(the test run only checks this code on a tiny input)."""
