"""The ported network as the training teacher: no dlib needed, the same descriptors as dlib's network."""
import numpy as np
import pytest


def test_port_teacher_batches_like_single_faces_and_needs_landmarks(samples, detector_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("face_recognition_models", reason="the .dat ships in face_recognition_models")
    from conftest import rgb
    from edge.vision.detector import BlazeFaceDetector
    from train.teacher import PortTeacher

    det = BlazeFaceDetector(detector_path)
    t = PortTeacher(batch=2)
    faces = []
    for n in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        img = rgb(samples / n)
        faces.append((img, det.detect(img)[0]))
    single = np.stack([t.embed(img, f.box, f.landmarks) for img, f in faces])
    from edge.vision.align import align_face

    batched = t.embed_chips(np.stack([align_face(img, f.landmarks, template="dlib150") for img, f in faces]))
    np.testing.assert_allclose(single, batched, atol=1e-5)
    e = single / np.linalg.norm(single, axis=1, keepdims=True)
    assert e[0] @ e[1] > e[0] @ e[2] and e[0] @ e[1] > e[1] @ e[2]     # obama is nearer obama than biden
    # dlib's own distance rule holds on the raw descriptors: same person < 0.6 < different people.
    assert np.linalg.norm(single[0] - single[1]) < 0.6 < np.linalg.norm(single[0] - single[2])
    with pytest.raises(ValueError, match="landmarks"):
        t.embed(faces[0][0], faces[0][1].box)
