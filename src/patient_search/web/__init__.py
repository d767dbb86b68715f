"""The front-desk search page: static HTML/CSS/JS served by the service, plus dev sign-in."""
