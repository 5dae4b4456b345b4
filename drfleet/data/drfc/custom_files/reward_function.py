def reward_function(params):
    """Stay near the centre line (AWS DeepRacer's first example)."""
    distance = params["distance_from_center"]
    width = params["track_width"]
    if distance <= 0.1 * width:
        return 1.0
    if distance <= 0.25 * width:
        return 0.5
    if distance <= 0.5 * width:
        return 0.1
    return 1e-3
