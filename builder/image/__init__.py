"""What goes into a training image and how it is built: the build context
(`context`), the Dockerfile rendered from base-images/ templates (`render`), the
agent bundle (`agent_bundle`), conda requests (`conda`), and `build`, which turns a
BuildSpec into a tagged (and pushed) image and reads its labels back. A new
template fragment: a partial under base-images/partials/, a field on ImageLayers
computed in `render.image_layers`, and a golden file in tests/golden/dockerfiles."""
