"""Loop closure: find places the camera comes back to, verify them with the model, and spread the
correction over the run with a Sim(3) pose graph over chunks (docs/loop-closure.md).

    places.PlaceIndex ──candidates──▶ verify.verify_loop ──loop edges──▶ graph.solve_pose_graph
                                                                            │ per-chunk Sim(3)
                                                  closer.LoopCloser ◀───────┘ per-frame corrections
"""
