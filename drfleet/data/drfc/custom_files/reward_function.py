def reward_function(params):
    """Stay near the centre line, and do not steer harder than the action space needs."""
    width = params["track_width"]
    distance = params["distance_from_center"]
    if distance <= 0.1 * width:
        reward = 1.0
    elif distance <= 0.25 * width:
        reward = 0.5
    elif distance <= 0.5 * width:
        reward = 0.1
    else:
        reward = 1e-3  # about to leave the track
    if abs(params["steering_angle"]) > 15:  # fits the default action space (+-30 degrees)
        reward *= 0.8
    return float(reward)
